import sys

from iommuctl.cli import main

sys.exit(main())
