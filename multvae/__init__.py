"""The library: data, model, training, evaluation and reporting of the Mult-VAE study, one idea
per module. It never imports the command layer (stages/), and imports nothing here, so that each
command loads only the modules it uses."""
