"""What measures fasttcp: the `fasttcp bench` job (`handshakes`, `codec`, `tracker`), its
synthetic workloads, the training run of the profile-guided build (`pgo`) and the plain C
handshake loops it compares the endpoint with (`baseline`). The library never imports it.
"""
