from shiploop.cli.entry import main

main()
