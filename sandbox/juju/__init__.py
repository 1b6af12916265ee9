# The local model's controller and CLI: a small Juju 3.x emulator for machine charms.
# Spec: ../shared/reference/juju.md; see sandbox/README.md for the architecture.
