"""Release image lists shipped with arcgap (installed as the package ``arcgap.manifests``)."""
