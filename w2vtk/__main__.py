from w2vtk.cli import main

main()
