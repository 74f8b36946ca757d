"""Files the relay keeps on disk: the persistent queue's database and the checks on its directory."""
