import sys

from shiploop.daemon.main import main

sys.exit(main())
