"""The run loop and its callbacks: drive programs chunk by chunk, report in config order."""
