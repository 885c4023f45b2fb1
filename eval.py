"""Evaluate an ACmix checkpoint (not built yet).

Evaluation comes with the training issue; until then this entry point refuses to run.
"""

import sys

if __name__ == "__main__":
    sys.stderr.write("eval.py is not implemented yet (see the issue 'Training and evaluation').\n")
    sys.exit(2)
