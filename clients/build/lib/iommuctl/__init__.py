"""iommuctl: the command line of iommud (see `iommuctl --help`)."""
