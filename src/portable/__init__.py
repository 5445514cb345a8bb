"""The build shared by the portable tarball and the AppImage: what goes into the bundle, and the
gates every built bundle must pass."""
