"""Pure-Python reference implementations used as test oracles (never by fasttcp itself).

`oracle` holds the arithmetic (RFC 1071 checksums, sequence-space predicates, the RFC
9293 acceptability table, a TCP option decoder); `packets` builds IPv4/IPv6/TCP packets
byte by byte so tests do not need fasttcp to make their inputs.
"""
