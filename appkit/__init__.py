"""What apps and tasks share: the in-process cluster, the client helpers and the RAN simulator.

Above the daemons (core, nodes), below the command line (``cli``) and the research's tasks: nothing
here parses arguments or imports either of them.
"""
