from llem.cli import main

main()
