# Every host gets the whole description (validated in stack.sls) plus its own
# view under halite:host.
base:
  '*':
    - stack
