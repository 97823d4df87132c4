from iclab.cli import main

main()
