"""`python -m sim`: play a simulated worker day against a running Terrain (see sim/run.py)."""

from sim.run import main

raise SystemExit(main())
