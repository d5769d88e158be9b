# What the template needs from Packer: 1.7 or later (`required_plugins`), and the Amazon plugin for the
# amazon-ebs builder, which `packer init ami/` installs (Packer 1.10+ no longer bundles it).
packer {
  required_version = ">= 1.7.0"
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.3.0, < 2.0.0"
    }
  }
}
