"""The connection table: flow keys, the keyed hash, Robin Hood open addressing with the
connection record inline, a timer wheel of per-state deadlines, and the policy when full.
Knows nothing of TCP beyond "a record has a state and a deadline".

Compiled module: `table` (`ConnectionTable`, its C core in table_core.pxi); `keyhash.pxd`
and `ops.pxd` are the inline C the endpoint and the tracker compile into their loops.
"""
