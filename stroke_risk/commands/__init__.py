"""Command-line programs: thin argparse shells over the library (the library parses no arguments)."""
