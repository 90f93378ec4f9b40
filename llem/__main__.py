from llem.cli import entry

entry()
