from smollm2_recipes.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
