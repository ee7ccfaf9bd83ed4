from speechqa.cli import main

main()
