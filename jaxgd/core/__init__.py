"""The core: pure, jittable pieces that know no strategy."""
