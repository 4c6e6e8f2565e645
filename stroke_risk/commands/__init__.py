"""Command-line programs: thin argparse shells over the library, which parses no arguments."""
