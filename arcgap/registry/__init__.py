"""Talking to registries over the OCI Distribution API: transport, authentication, stored credentials."""
