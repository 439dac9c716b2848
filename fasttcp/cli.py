"""The `fasttcp` command (placeholder until the bench module lands)."""
def main(argv=None):
    return 0
