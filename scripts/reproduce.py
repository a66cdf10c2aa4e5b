"""Kept for old command lines: the reproduction is ``featx reproduce`` (featx.reproduce)."""
import sys

from featx.cli import main

main(["reproduce", *sys.argv[1:]], prog_name="featx")
