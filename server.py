"""``python server.py`` is ``graphengine serve``: same flags, same defaults."""

import sys

from graphengine.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
