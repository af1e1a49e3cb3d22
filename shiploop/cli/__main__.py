from shiploop.cli.main import main

main()
