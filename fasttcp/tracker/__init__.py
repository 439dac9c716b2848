"""The passive tracker: conntrack states and window tracking, Zeek conn_state/history,
per connection, over both directions of observed traffic.

Compiled module: `tracker` (C core in tracker_core.pxi and tracker_zeek.pxi); its
vocabulary (states, end reasons, timeouts, row conversion) is in `vocabulary`.
"""
