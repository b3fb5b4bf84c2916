"""Ways into the service: HTTP and the command line."""
