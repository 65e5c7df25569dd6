import sys

from iommud_preload.launcher import main

sys.exit(main())
