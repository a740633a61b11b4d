"""`python -m striate` runs the command line."""

from striate.cli.app import main

if __name__ == "__main__":
    main()
