"""The `striate` command line: thin doors onto the Python core."""
