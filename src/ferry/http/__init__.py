"""HTTP transport: thin routes over the DataPlane."""
