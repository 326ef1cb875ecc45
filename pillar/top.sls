# Every host gets the whole description (validated in halite.sls) plus its own
# view under halite:host.
base:
  '*':
    - halite
