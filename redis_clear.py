"""Delete the online model from Redis (the tutorial's "retrain from scratch" step).

    python redis_clear.py               # remove only this project's keys (online_ml_model*)
    python redis_clear.py aaa bbb ccc   # delete exactly these keys, reporting each
    python redis_clear.py --flushdb     # wipe the whole Redis database
    python redis_clear.py --rollback [VERSION]

The logic lives in ``online_ml/tools.py``.
"""
import sys

from online_ml.tools import main

if __name__ == "__main__":
    sys.exit(main())
