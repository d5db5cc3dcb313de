from mpdit.cli import main

raise SystemExit(main())
