"""Small utilities shared by the command line, the trainer and the studies (image grids, ...)."""
