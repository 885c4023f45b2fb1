"""Train an ACmix model (not built yet).

Training, the YAML recipes and the data pipeline come with the training issue;
until then this entry point refuses to run rather than pretend to train.
"""

import sys

if __name__ == "__main__":
    sys.stderr.write(
        "train.py is not implemented yet (see the issue 'Training and evaluation'). "
        "What works today: the models (python scripts/model_summary.py) and the tests.\n"
    )
    sys.exit(2)
