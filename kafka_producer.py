"""Stream shuffled sklearn digits into Kafka (topic handwritten_digit), 10 records/s by default.

    python kafka_producer.py                      # the tutorial's behaviour: forever, Ctrl-C stops
    python kafka_producer.py --rate 0 --epochs 1  # one shuffled pass, as fast as possible

See ``python kafka_producer.py --help``; the logic lives in ``online_ml/producer.py``.
"""
import sys

from online_ml.producer import main

if __name__ == "__main__":
    sys.exit(main())
