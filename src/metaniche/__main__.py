from metaniche.cli import main

main()
