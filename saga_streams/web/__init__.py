"""HTTP views. They read tables and publish requests; only agents change tables."""
