"""The bundle: one zstd-compressed tar holding ``arcgap.yaml`` and an OCI image layout."""
