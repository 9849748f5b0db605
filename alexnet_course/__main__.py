from alexnet_course.cli import main

raise SystemExit(main())
