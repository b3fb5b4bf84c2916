"""Run the soak test: `python -m bench.soak --minutes 10 --rate 20`."""

from bench.soak.run import main

main()
