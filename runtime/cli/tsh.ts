#!/usr/bin/env node
/** `tsh`: the user client. Login, ls, ssh, scp and play arrive with the proxy service. */
import { Command } from 'commander';
import { VERSION } from '../version';
import { runCli } from './common';

const program = new Command('tsh').description('Teleport user client').version(VERSION, '--version');
program
  .command('version')
  .description('Prints the version')
  .action(() => {
    process.stdout.write(`Teleport v${VERSION} node ${process.version}\n`);
  });
void runCli(program);
