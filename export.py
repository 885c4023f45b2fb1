"""Export an ACmix model to MindIR/AIR/ONNX (not built yet).

Export comes with the export issue; until then this entry point refuses to run.
"""

import sys

if __name__ == "__main__":
    sys.stderr.write("export.py is not implemented yet (see the issue 'Export and deployment').\n")
    sys.exit(2)
