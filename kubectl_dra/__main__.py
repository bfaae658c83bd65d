from kubectl_dra.cli import main

main()
