from clipclap_cli.cli import main

main()
