from medklip.cli import main

raise SystemExit(main())
