"""TDX backend tests (a package, so that file names such as test_bringup.py do not collide
with other backends' tests)."""
