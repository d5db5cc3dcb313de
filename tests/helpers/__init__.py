"""What the tests share, in one place (imported as `helpers.<module>`; tests/ is on the path):

cli                the command line in-process (argv in; exit code, stdout, stderr out), and as a process
runs               the one tiny digits training run of the tests, as a TrainConfig and as argv
models             small registered models with random weights, twin models on two backends
kernels            the tolerance rule and the output-and-every-gradient check of the fused ops
torchrun           torchrun agents on 127.0.0.1, as on several machines
fake_inception     a cheap stand-in with the Inception network's outputs
official_reference the official DiT / SiT / reference-MPDiT forwards as plain functions
fidelity_reference torch-fidelity's Inception extractor, imported without torchvision
faulty_worker      `python -m mpdit` whose rank FAIL_RANK dies after step FAIL_AFTER (a torchrun script)
"""
